"""ruview-node: find, flash, provision, monitor and simulate RuView C6 nodes."""
