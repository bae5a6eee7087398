# Every transfer benchmark fails before its first iteration when the pretrained checkpoint is
# missing or does not fit the backbone (mmengine's `Pretrained` initializer would only warn and
# the benchmark would measure a random network); see mmssl_ext/engine/hooks/pretrained_check.py.
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)
custom_hooks = [dict(type='PretrainedCheckHook', require=True)]
