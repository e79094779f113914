"""``crsdata train user-decision-scorer``: the Interplay user simulator's learned accept decision."""
