"""A server on $PORT that accepts connections and never answers (a replica hung in its handler)."""

import os
import socket
import time

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(os.environ["PORT"])))
sock.listen(128)
held = []
while True:
    conn, _ = sock.accept()
    held.append(conn)  # read nothing, answer nothing, close nothing
    if len(held) > 1000:
        held.pop(0).close()
    time.sleep(0)
