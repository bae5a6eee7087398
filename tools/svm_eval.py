"""VOC07-style linear SVM mAP per layer (and low-shot); see `python tools/svm_eval.py -h`."""
from mmssl_ext.cli.svm_eval import main

if __name__ == '__main__':
    main()
