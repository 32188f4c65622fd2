//! Build script: embeds version and commit info for `gst::plugin_define!`.
fn main() {
    gst_plugin_version_helper::info()
}
