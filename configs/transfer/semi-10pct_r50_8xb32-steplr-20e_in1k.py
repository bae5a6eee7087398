# As semi-1pct_r50_8xb32-steplr-20e_in1k.py on the 10 % label subset (meta/train_10pct.txt, which
# contains the 1 % one).
_base_ = ['./semi-1pct_r50_8xb32-steplr-20e_in1k.py']

train_dataloader = dict(dataset=dict(ann_file='meta/train_10pct.txt'))
