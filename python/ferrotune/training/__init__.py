"""Fine-tuning with Accelerate and PEFT, fed by ferrotune: ``ferrotune.train`` and ``ferrotune train``."""

from .config import TrainConfig
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
