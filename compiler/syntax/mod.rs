//! Text to syntax tree.

pub mod ast;
pub mod parser;
pub mod tree;
