"""crsdata: conversational recommendation data as versioned Hugging Face datasets."""

from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import (
    ACTIONS,
    DIALOGUE_FEATURES,
    ITEM_FEATURES,
    ROLES,
    Action,
    Role,
    validate_dialogue,
)
from crsdata.version import __version__

__all__ = [
    "ACTIONS",
    "DIALOGUE_FEATURES",
    "ITEM_FEATURES",
    "ROLES",
    "Action",
    "BadInputError",
    "Role",
    "SkipLog",
    "__version__",
    "validate_dialogue",
]
