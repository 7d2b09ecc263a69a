//! Dependency graph of modules: spawn order, shutdown tiers, cycles (petgraph).
