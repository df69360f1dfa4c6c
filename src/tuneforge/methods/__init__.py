from tuneforge.methods.base import METHODS, HeadInfo, Method, MethodParams, count_parameters
from tuneforge.plugins import import_submodules

import_submodules(__name__)

__all__ = ["METHODS", "HeadInfo", "Method", "MethodParams", "count_parameters"]
