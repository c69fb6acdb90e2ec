//! The control room's front-end library comes from npm (web/package.json) and is embedded into
//! the binary: fail early, saying how to get it, when it has not been installed.
fn main() {
    let mpegts = "../web/node_modules/mpegts.js/dist/mpegts.js";
    println!("cargo:rerun-if-changed={mpegts}");
    println!("cargo:rerun-if-changed=../web/public");
    if !std::path::Path::new(mpegts).is_file() {
        panic!(
            "{mpegts} is missing: run `bash tools/setup-debian.sh` (or `npm ci` in web/) before building"
        );
    }
}
