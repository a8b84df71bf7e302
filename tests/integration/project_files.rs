//! Project files: LICENSE, CHANGELOG, SECURITY, and the systemd unit (systemd-analyze verify).
