//! onair.toml parsing and validation: any text gives a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_fuzz::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, "fuzz.toml");
    }
});
