"""SFTok models: tokenizer, MaskGIT-VQGAN teacher, class-conditional generator, configs and checkpoints."""
from .checkpoint import CheckpointError, LoadReport, load_weights, read_state_dict
from .config import ConfigError, SFTokConfig, TeacherConfig, VitConfig, resolve_config
from .generator import GENERATOR_PRESETS, GeneratorConfig, MaskGITGenerator
from .maskgit_vqgan import MaskGITVQGAN
from .presets import PRESETS, create_config
from .pretrained import from_pretrained, load_pretrained, load_pretrained_as, save_pretrained
from .revq import REVQ_PRESETS, ReVQ, ReVQConfig
from .revq_files import load_dcae, load_revq
from .sftok import SFTok, DecodeStep, InputError
from .titok import TITOK_PRESETS, TiTok, TiTokConfig
from .tokenizer import Tokenizer, TokenizerInfo, as_tokenizer, load_tokenizer, register_tokenizer

__all__ = [
    "SFTok", "DecodeStep", "InputError", "SFTokConfig", "TeacherConfig", "VitConfig", "ConfigError",
    "MaskGITVQGAN", "MaskGITGenerator", "GeneratorConfig", "GENERATOR_PRESETS", "PRESETS", "create_config",
    "CheckpointError", "LoadReport", "load_weights", "read_state_dict", "from_pretrained", "load_pretrained", "load_pretrained_as",
    "save_pretrained", "resolve_config",
    "TiTok", "TiTokConfig", "TITOK_PRESETS", "ReVQ", "ReVQConfig", "REVQ_PRESETS", "load_revq", "load_dcae",
    "Tokenizer", "TokenizerInfo", "as_tokenizer", "load_tokenizer", "register_tokenizer",
]
