//! Integration tests (netns measurement tests).
