"""Examples, images and the collator that renders them; forgetting streams; release records; the
processed-image cache; drawing helpers of the built-in data."""
