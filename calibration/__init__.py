"""INT8 calibration from real person crops: crop collection, Q/DQ quantization, accuracy gate."""
