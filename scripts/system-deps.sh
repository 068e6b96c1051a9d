#!/usr/bin/env bash
# Install the Debian packages the tests need (tgt: a real iSCSI tape library; libiscsi-dev to
# build the iSCSI initiator; dosfstools, mtools, ntfs-3g make FAT/NTFS images and sleuthkit
# checks our block maps; xfsprogs and btrfs-progs make reflink filesystems for snapshots;
# chromium loads the Prefect UI headless in tests/test_ui.py).
# Uses sudo when not root. Does nothing when all are present.
set -euo pipefail
pkgs=(tgt libiscsi-dev dosfstools mtools ntfs-3g sleuthkit xfsprogs btrfs-progs chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
