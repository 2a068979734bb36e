#!/usr/bin/python3
"""A real RTSP server (GStreamer's gst-rtsp-server) for the tests. Run with Debian's python3 (it has `gi`).

  rtsp_server.py PORT [--file PATH] [--user U --password P]

Mounts: /live (an endless H.264 test pattern, 25 fps) and, with --file, /file (the MP4, served without
re-encoding, looping is up to the client). Prints READY when listening. Ends on SIGTERM.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--file")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    width, height = args.size.split("x")
    live = GstRtspServer.RTSPMediaFactory()
    live.set_launch(f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate=25/1 "
                    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 "
                    "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    live.set_shared(True)
    mounts.add_factory("/live", live)
    if args.file:
        media = GstRtspServer.RTSPMediaFactory()
        media.set_launch(f"( filesrc location={args.file} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 "
                         "config-interval=1 )")
        mounts.add_factory("/file", media)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        for factory in [live] + ([media] if args.file else []):
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_role(args.user)
            permissions.add_permission_for_role(args.user, "media.factory.access", True)
            permissions.add_permission_for_role(args.user, "media.factory.construct", True)
            factory.set_permissions(permissions)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *a: loop.quit())
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
