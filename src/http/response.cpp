#include "http/response.h"

#include <ctime>

namespace http {

const char* status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

const std::string& http_date() {
  thread_local std::time_t last = 0;
  thread_local std::string text;
  std::time_t now = std::time(nullptr);
  if (now != last) {
    last = now;
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    text = buf;
  }
  return text;
}

std::string response(int status, const Headers& headers, std::string_view body, bool keep_alive, bool head_only) {
  std::string out = response_head(status, headers, body.size(), keep_alive);
  if (!head_only) out.append(body);
  return out;
}

std::string response_head(int status, const Headers& headers, size_t content_length, bool keep_alive) {
  std::string out;
  out.reserve(200);
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(status_text(status)).append("\r\n");
  out.append("Date: ").append(http_date()).append("\r\n");
  out.append("Server: reactor-chat\r\n");
  for (const auto& [k, v] : headers) out.append(k).append(": ").append(v).append("\r\n");
  if (status != 101 && status != 204 && status != 304) {
    out.append("Content-Length: ").append(std::to_string(content_length)).append("\r\n");
  }
  if (status != 101) out.append(keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  out.append("\r\n");
  return out;
}

std::string error_response(int status, std::string_view reason, bool keep_alive, const Headers& extra,
                           bool head_only) {
  Headers headers = extra;
  headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  headers.emplace_back("Cache-Control", "no-store");
  std::string body = std::to_string(status) + " " + status_text(status) + "\n";
  if (!reason.empty()) body.append(reason).append("\n");
  return response(status, headers, body, keep_alive, head_only);
}

}  // namespace http
