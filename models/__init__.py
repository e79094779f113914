"""Training recipes, one folder per published model; ``crsdata train RECIPE`` looks it up here."""
