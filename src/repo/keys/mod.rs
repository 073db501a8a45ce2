//! The repository's keys: where the secret comes from (`source`), the rule for files that hold
//! secrets (`secret_file`).

mod secret_file;
mod source;

pub use secret_file::{read_secret_file, secret_file_problem};
pub use source::{
    COMMAND_TIMEOUT, KeySource, MAX_PASSPHRASE_LEN, PASSPHRASE_VARIABLE, Secret, parse_key_file,
    passphrase, run_passphrase_command,
};
