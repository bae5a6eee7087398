# Deprecated name (kept for one release): the RotNet ImageNet recipe is now
# rotation_r50_8xb24-50e_in1k.py (the official code's batch of 192 and 50-epoch schedule), which
# this name runs unchanged; the 30-epoch schedule it used to hold was not the reference's.
_base_ = ['./rotation_r50_8xb24-50e_in1k.py']
