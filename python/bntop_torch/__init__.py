"""bntop-torch: stream what every BatchNorm layer of a PyTorch training run is doing to bntop.

    mon = bntop_torch.watch(model, optimizer, record="run.jsonl")   # or serve=True
    ...                                                              # train as usual
    mon.close()                                                      # or `with watch(...)`
"""
from .controls import StopTraining
from .monitor import Monitor, watch
from .sink import BntopNotFound

__version__ = "0.1.0"
__all__ = ["watch", "Monitor", "StopTraining", "BntopNotFound", "__version__"]
