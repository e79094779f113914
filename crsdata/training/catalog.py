"""One catalog of the data folders' items, as Interplay training and the evaluation of the trained simulators read
it. Its own module because the training (:mod:`crsdata.training.interplay`) runs the evaluation
(:mod:`crsdata.training.interplay_eval`) and both need it. Turns are merged by :mod:`crsdata.simulate.turns`, the
same in training and in replay.
"""

from __future__ import annotations

from typing import Any

from crsdata.training.data import DataFolder


def folders_catalog(folders: list[DataFolder]) -> Any:
    """One catalog of every folder's ``items`` configuration (titles to link, targets to describe)."""
    from crsdata.catalog import Catalog

    catalog = Catalog()
    for folder in folders:
        catalog.add_rows(folder.items())
    return catalog
