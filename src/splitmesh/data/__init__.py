"""Domain tables, splits, resampling and the datasets of the reference use cases."""
