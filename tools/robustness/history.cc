#include "history.h"

#include <fstream>

namespace etcdpp::robustness {
namespace {

void SkipWs(std::string_view s, size_t* p) {
  while (*p < s.size() && (s[*p] == ' ' || s[*p] == '\t' || s[*p] == '\r' || s[*p] == '\n')) ++*p;
}

bool ParseString(std::string_view s, size_t* p, std::string* out) {
  if (*p >= s.size() || s[*p] != '"') return false;
  ++*p;
  out->clear();
  while (*p < s.size()) {
    char c = s[(*p)++];
    if (c == '"') return true;
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (*p >= s.size()) return false;
    char e = s[(*p)++];
    switch (e) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case '/': out->push_back('/'); break;
      case 'n': out->push_back('\n'); break;
      case 't': out->push_back('\t'); break;
      case 'r': out->push_back('\r'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'u': {
        if (*p + 4 > s.size()) return false;
        unsigned v = std::stoul(std::string(s.substr(*p, 4)), nullptr, 16);
        *p += 4;
        if (v < 0x80) {
          out->push_back(static_cast<char>(v));
        } else if (v < 0x800) {
          out->push_back(static_cast<char>(0xC0 | (v >> 6)));
          out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
        } else {
          out->push_back(static_cast<char>(0xE0 | (v >> 12)));
          out->push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | (v & 0x3F)));
        }
        break;
      }
      default: return false;
    }
  }
  return false;
}

}  // namespace

bool ParseRecord(std::string_view s, Record* out, std::string* err) {
  out->clear();
  size_t p = 0;
  SkipWs(s, &p);
  if (p >= s.size() || s[p] != '{') {
    *err = "expected '{'";
    return false;
  }
  ++p;
  SkipWs(s, &p);
  if (p < s.size() && s[p] == '}') return true;
  while (true) {
    SkipWs(s, &p);
    std::string key;
    if (!ParseString(s, &p, &key)) {
      *err = "bad key at column " + std::to_string(p);
      return false;
    }
    SkipWs(s, &p);
    if (p >= s.size() || s[p] != ':') {
      *err = "expected ':' at column " + std::to_string(p);
      return false;
    }
    ++p;
    SkipWs(s, &p);
    Field f;
    if (p < s.size() && s[p] == '"') {
      f.kind = Field::kString;
      if (!ParseString(s, &p, &f.s)) {
        *err = "bad string at column " + std::to_string(p);
        return false;
      }
    } else if (s.substr(p, 4) == "null") {
      f.kind = Field::kNull;
      p += 4;
    } else if (s.substr(p, 4) == "true") {
      f.kind = Field::kBool;
      f.b = true;
      p += 4;
    } else if (s.substr(p, 5) == "false") {
      f.kind = Field::kBool;
      p += 5;
    } else {
      size_t start = p;
      if (p < s.size() && s[p] == '-') ++p;
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
      if (p == start || (p == start + 1 && s[start] == '-')) {
        *err = "bad value at column " + std::to_string(start);
        return false;
      }
      f.kind = Field::kInt;
      f.i = std::stoll(std::string(s.substr(start, p - start)));
    }
    (*out)[key] = std::move(f);
    SkipWs(s, &p);
    if (p < s.size() && s[p] == ',') {
      ++p;
      continue;
    }
    if (p < s.size() && s[p] == '}') return true;
    *err = "expected ',' or '}' at column " + std::to_string(p);
    return false;
  }
}

bool ReadHistoryFile(const std::string& path, std::vector<Record>* out, std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = "cannot open " + path;
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Record r;
    std::string e;
    if (!ParseRecord(line, &r, &e)) {
      *err = path + ":" + std::to_string(n) + ": " + e;
      return false;
    }
    out->push_back(std::move(r));
  }
  return true;
}

std::string GetStr(const Record& r, const std::string& k, const std::string& def) {
  auto it = r.find(k);
  if (it == r.end() || it->second.kind != Field::kString) return def;
  return it->second.s;
}

std::optional<std::string> GetOptStr(const Record& r, const std::string& k) {
  auto it = r.find(k);
  if (it == r.end() || it->second.kind != Field::kString) return std::nullopt;
  return it->second.s;
}

int64_t GetInt(const Record& r, const std::string& k, int64_t def) {
  auto it = r.find(k);
  if (it == r.end() || it->second.kind != Field::kInt) return def;
  return it->second.i;
}

bool GetBool(const Record& r, const std::string& k, bool def) {
  auto it = r.find(k);
  if (it == r.end() || it->second.kind != Field::kBool) return def;
  return it->second.b;
}

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out += "\"";
  return out;
}

RecordWriter::RecordWriter(std::string_view type) : line_("{\"t\":" + JsonQuote(type)) {}

void RecordWriter::Key(std::string_view k) { line_ += "," + JsonQuote(k) + ":"; }

RecordWriter& RecordWriter::Str(std::string_view k, std::string_view v) {
  Key(k);
  line_ += JsonQuote(v);
  return *this;
}

RecordWriter& RecordWriter::OptStr(std::string_view k, const std::optional<std::string>& v) {
  Key(k);
  line_ += v ? JsonQuote(*v) : "null";
  return *this;
}

RecordWriter& RecordWriter::Int(std::string_view k, int64_t v) {
  Key(k);
  line_ += std::to_string(v);
  return *this;
}

RecordWriter& RecordWriter::Bool(std::string_view k, bool v) {
  Key(k);
  line_ += v ? "true" : "false";
  return *this;
}

}  // namespace etcdpp::robustness
