//! Kernel daemon: supervisor, router, reconcile loop.
