"""The GRSU simulated-user scorer: ``crsdata train grsu-scorer`` (see :mod:`.recipe` and :mod:`.instructions`)."""
