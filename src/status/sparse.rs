//! Skeleton; written later in this session.
