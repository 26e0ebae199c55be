/* The benchmark's reference: the thinnest single-threaded epoll echo server we can write.
 * Level-triggered, one read and one write per event, no buffering beyond the stack: what a reader
 * would write in five minutes. Usage: epoll-echo-ref [port] [host]. Prints the same readiness line
 * as echo-server, and exits 0 on SIGTERM/SIGINT. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char** argv) {
  int port = argc > 1 ? atoi(argv[1]) : 1234;
  const char* host = argc > 2 ? argv[2] : "127.0.0.1";
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    perror("epoll-echo-ref: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &len);
  printf("epoll-echo-ref: listening on %s:%d (model reference, epoll)\n", host, ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, events[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char buf[64 * 1024];
  while (!stop) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ev.events = EPOLLIN;
          ev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0 && errno != EAGAIN) r = 0;
      }
      if (r == 0 || (r < 0 && errno != EAGAIN)) close(fd); /* epoll forgets it on close */
    }
  }
  return 0;
}
