# Deprecated name (kept for one release): the CMC ImageNet recipe is now cmc_r50_8xb32-240e_in1k.py
# (the reference code's 240 epochs, crop scale, lr per image and stem), which this name runs.
_base_ = ['./cmc_r50_8xb32-240e_in1k.py']
