"""mtst's Hydra sweeper: found by Hydra's plugin discovery, which only looks in `hydra_plugins`."""
