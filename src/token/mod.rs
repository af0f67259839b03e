//! Skeleton: the helper implementing signing replaces this.
