"""Training: recipe (config), images (data), the step (step), the resumable run (loop, checkpoint),
validation (evaluate) and weight export (export); `aecodec train` / `aecodec export` (commands)."""
