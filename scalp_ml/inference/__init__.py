"""Using trained models: checkpoint loading, predictors, Grad-CAM and export."""
