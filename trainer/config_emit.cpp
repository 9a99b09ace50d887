// The resolved config written back out: YAML (config.yaml in every run directory; it loads
// again to the same RunConfig) and JSON with a dotted flattening for summary CSVs (zoology, W&B).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "trainer/config_fields.h"

namespace kimi {
namespace {

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
    parts.push_back(key.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(key.substr(start));
  return parts;
}

// Emits leaves in visit order, opening and closing nested maps as the section path changes.
class YamlWriter {
 public:
  explicit YamlWriter(YAML::Emitter& out) : out_(out) {}

  template <class T>
  void operator()(const std::string& key, const T& value) {
    auto parts = split_key(key);
    const std::string leaf = parts.back();
    parts.pop_back();
    enter(parts);
    out_ << YAML::Key << leaf << YAML::Value;
    emit(value);
  }
  void finish() { enter({}); }

 private:
  void enter(const std::vector<std::string>& sections) {
    size_t common = 0;
    while (common < open_.size() && common < sections.size() && open_[common] == sections[common]) {
      ++common;
    }
    for (; open_.size() > common; open_.pop_back()) out_ << YAML::EndMap;
    while (open_.size() < sections.size()) {
      open_.push_back(sections[open_.size()]);
      out_ << YAML::Key << open_.back() << YAML::Value << YAML::BeginMap;
    }
  }
  // Shortest text that reads back to the same double (fmt's "{}"), with a ".0" before a bare
  // exponent: YAML 1.1 readers such as PyYAML take "1e-08" for a string, "1.0e-08" for a float.
  void emit(double v) {
    std::string text = fmt::format("{}", v);
    const size_t e = text.find('e');
    if (e != std::string::npos && text.find('.') == std::string::npos) text.insert(e, ".0");
    out_ << text;
  }
  void emit(int64_t v) { out_ << v; }
  void emit(bool v) { out_ << v; }
  void emit(const std::string& v) { out_ << v; }
  void emit(const std::vector<int64_t>& v) {
    out_ << YAML::Flow << YAML::BeginSeq;
    for (int64_t x : v) out_ << x;
    out_ << YAML::EndSeq;
  }
  // One mixer for every layer reads best as a plain name.
  void emit(const std::vector<std::string>& v) {
    if (v.size() == 1) {
      out_ << v[0];
      return;
    }
    out_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& x : v) out_ << x;
    out_ << YAML::EndSeq;
  }

  YAML::Emitter& out_;
  std::vector<std::string> open_;
};

void flatten_into(const nlohmann::json& node, const std::string& prefix, nlohmann::json& flat) {
  if (!node.is_object()) {
    flat[prefix] = node;
    return;
  }
  for (const auto& [key, value] : node.items()) {
    flatten_into(value, prefix.empty() ? key : prefix + "." + key, flat);
  }
}

}  // namespace

std::string to_yaml(const RunConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  YamlWriter writer(out);
  config_detail::visit_fields(config, writer);
  writer.finish();
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

nlohmann::json to_json(const RunConfig& config) {
  nlohmann::json out = nlohmann::json::object();
  config_detail::visit_fields(config, [&](const std::string& key, const auto& value) {
    std::string pointer = "/" + key;
    for (auto& ch : pointer) ch = ch == '.' ? '/' : ch;
    out[nlohmann::json::json_pointer(pointer)] = value;
  });
  return out;
}

nlohmann::json flatten_dotted(const nlohmann::json& nested) {
  nlohmann::json flat = nlohmann::json::object();
  flatten_into(nested, "", flat);
  return flat;
}

}  // namespace kimi
