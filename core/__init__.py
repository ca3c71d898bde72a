"""SFTok models: tokenizer, MaskGIT-VQGAN teacher, class-conditional generator, configs and checkpoints."""
from .checkpoint import CheckpointError, LoadReport, load_weights, read_state_dict
from .config import ConfigError, SFTokConfig, TeacherConfig, VitConfig, resolve_config
from .generator import GENERATOR_PRESETS, GeneratorConfig, MaskGITGenerator
from .maskgit_vqgan import MaskGITVQGAN
from .presets import PRESETS, create_config
from .pretrained import from_pretrained, load_pretrained, load_pretrained_as, save_pretrained
from .sftok import SFTok, DecodeStep, InputError

__all__ = [
    "SFTok", "DecodeStep", "InputError", "SFTokConfig", "TeacherConfig", "VitConfig", "ConfigError",
    "MaskGITVQGAN", "MaskGITGenerator", "GeneratorConfig", "GENERATOR_PRESETS", "PRESETS", "create_config",
    "CheckpointError", "LoadReport", "load_weights", "read_state_dict", "from_pretrained", "load_pretrained", "load_pretrained_as",
    "save_pretrained", "resolve_config",
]
