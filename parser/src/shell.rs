//! PLACEHOLDER (being replaced by the word-expansion implementation).
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("expansion not written yet")]
    NotWritten,
}

pub trait Env {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct Lexer {
    pub escape: char,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }
    pub fn process_word(&self, _word: &str, _env: &dyn Env) -> Result<String, ExpandError> {
        Err(ExpandError::NotWritten)
    }
    pub fn process_words(&self, _word: &str, _env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Err(ExpandError::NotWritten)
    }
}
