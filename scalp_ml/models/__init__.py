"""Networks: a timm backbone shared by six grading heads."""
