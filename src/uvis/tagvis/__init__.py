"""Tag-based bottom-up video instance segmentation (Kini & Shah)."""
