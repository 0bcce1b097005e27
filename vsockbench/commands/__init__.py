"""CLI sub-commands, one module each (see ``vsockbench.cli``)."""
