//! Integration tests: real `ora` processes on real files in temp dirs.
