"""Resource planning before training: peak memory and time per epoch, analytic and measured (`tuneforge plan`)."""

from tuneforge.estimate.hardware import PROFILES, Hardware, get_hardware, hardware_names
from tuneforge.estimate.plan import PlanResult, plan

__all__ = ["PROFILES", "Hardware", "PlanResult", "get_hardware", "hardware_names", "plan"]
