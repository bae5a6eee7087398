# Fail before the first iteration when the pretrained checkpoint is missing or does not fit
# (mmengine's `Pretrained` initializer only warns).
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)
custom_hooks = [dict(type='PretrainedCheckHook', require=True)]
