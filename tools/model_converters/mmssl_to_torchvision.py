"""Export one of our backbones as a torchvision ResNet / timm ViT state dict; see `-h`."""
from mmssl_ext.cli.convert import export_main

if __name__ == '__main__':
    export_main()
