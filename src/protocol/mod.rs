//! Wire protocol (compat.md §1): the only code that knows the wire format.
