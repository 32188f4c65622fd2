//! The sound card that belongs to a capture device (issue 7: "the V4L2 device's
//! sibling sound card"), found through sysfs.
//!
//! A UVC HDMI grabber or webcam is one USB device with a video interface (a V4L2
//! node under `/sys/class/video4linux/videoN`) and, when it carries sound, a UAC
//! audio interface (an ALSA card under `/sys/class/sound/cardM`). Both interfaces'
//! `device` links resolve to children of the same USB device directory, so the card
//! whose interface shares that parent is the grabber's own sound.

use std::path::{Path, PathBuf};

/// The ALSA device string (`hw:CARD=<id>,DEV=0`, stable across card renumbering) of
/// the sound card on the same USB device as the V4L2 node `video_device`
/// (`/dev/video0`, or a `/dev/v4l/by-id/…` link to it). `sys_root` is `/sys` in
/// production (a temporary tree in tests). `None` when the node is not in sysfs or
/// no card shares its USB device.
pub fn sibling_sound_card(sys_root: &Path, video_device: &Path) -> Option<String> {
    let node = std::fs::canonicalize(video_device).unwrap_or_else(|_| video_device.to_owned());
    let name = node.file_name()?.to_str()?.to_owned();
    let video_iface = std::fs::canonicalize(
        sys_root
            .join("class/video4linux")
            .join(&name)
            .join("device"),
    )
    .ok()?;
    let usb_device = video_iface.parent()?.to_path_buf();
    let mut cards: Vec<PathBuf> = std::fs::read_dir(sys_root.join("class/sound"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("card"))
        })
        .collect();
    cards.sort();
    for card in cards {
        let Ok(iface) = std::fs::canonicalize(card.join("device")) else {
            continue;
        };
        if iface.parent() == Some(usb_device.as_path()) {
            let id = std::fs::read_to_string(card.join("id")).ok()?;
            let id = id.trim();
            if id.is_empty() {
                return None;
            }
            return Some(format!("hw:CARD={id},DEV=0"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree with a grabber (video0 + card1 on USB device 1-1) and a second
    /// camera without sound (video2 on 1-2), plus the board's own card0.
    fn tree(root: &Path) {
        let devs = root.join("devices/usb1");
        for d in [
            "1-1/1-1:1.0",
            "1-1/1-1:1.2",
            "1-2/1-2:1.0",
            "platform/hdmi-sound",
        ] {
            std::fs::create_dir_all(devs.join(d)).unwrap();
        }
        for (node, target) in [("video0", "1-1/1-1:1.0"), ("video2", "1-2/1-2:1.0")] {
            let dir = root.join("class/video4linux").join(node);
            std::fs::create_dir_all(&dir).unwrap();
            symlink(devs.join(target), dir.join("device")).unwrap();
        }
        for (card, target, id) in [
            ("card0", "platform/hdmi-sound", "rockchiphdmi"),
            ("card1", "1-1/1-1:1.2", "MS2109"),
        ] {
            let dir = root.join("class/sound").join(card);
            std::fs::create_dir_all(&dir).unwrap();
            symlink(devs.join(target), dir.join("device")).unwrap();
            std::fs::write(dir.join("id"), format!("{id}\n")).unwrap();
        }
        // Control nodes are not cards.
        std::fs::create_dir_all(root.join("class/sound/controlC1")).unwrap();
    }

    #[test]
    fn finds_the_grabbers_card_only() {
        let dir = std::env::temp_dir().join(format!("braid-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        tree(&dir);
        assert_eq!(
            sibling_sound_card(&dir, Path::new("/dev/video0")).as_deref(),
            Some("hw:CARD=MS2109,DEV=0")
        );
        assert_eq!(sibling_sound_card(&dir, Path::new("/dev/video2")), None);
        assert_eq!(sibling_sound_card(&dir, Path::new("/dev/video9")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
