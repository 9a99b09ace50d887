// load_config: YAML file -> flat map of dotted keys -> overrides -> typed RunConfig
// (STYLE.md item 12). Overrides replace entries of the flat map, never nodes inside the parsed
// tree: yaml-cpp's Node::operator= rebinds shared storage (jbeder/yaml-cpp #208, #928, #1275).
#include "trainer/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <type_traits>

#include "core/tensor/error.h"
#include "tasks/task.h"
#include "trainer/config_fields.h"

namespace kimi {
namespace {

using config_detail::closest_key;
using config_detail::visit_fields;

struct Entry {
  YAML::Node node;
  std::string where;  // " (file:line)" or " (override 'k=v')", appended to error messages
};
using FlatConfig = std::map<std::string, Entry>;

const std::set<std::string>& known_sections() {
  static const std::set<std::string> sections = [] {
    std::set<std::string> out;
    for (const auto& key : known_config_keys()) {
      for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
        out.insert(key.substr(0, dot));
      }
    }
    return out;
  }();
  return sections;
}

bool is_leaf(const std::string& key) {
  const auto& keys = known_config_keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  const std::string hint = closest_key(key);
  throw UserError(fmt::format("unknown config key '{}'{}{}", key, where,
                              hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
}

void put(FlatConfig& flat, const std::string& key, const YAML::Node& node, std::string where) {
  // erase + emplace: the map's old Node is dropped, not assigned into (see the file comment).
  flat.erase(key);
  flat.emplace(key, Entry{node, std::move(where)});
}

void flatten(const YAML::Node& map, const std::string& prefix, const std::string& file,
             FlatConfig& flat) {
  for (const auto& item : map) {
    const std::string where = fmt::format(" ({}:{})", file, item.first.Mark().line + 1);
    if (!item.first.IsScalar()) throw UserError(fmt::format("non-scalar config key{}", where));
    const std::string key =
        prefix.empty() ? item.first.Scalar() : prefix + "." + item.first.Scalar();
    if (flat.count(key)) throw UserError(fmt::format("duplicate config key '{}'{}", key, where));
    if (is_leaf(key)) {
      put(flat, key, item.second, where);
    } else if (known_sections().count(key)) {
      if (item.second.IsMap()) {
        flatten(item.second, key, file, flat);
      } else if (!item.second.IsNull()) {
        throw UserError(fmt::format("{}: expected a section (a mapping of keys){}", key, where));
      }
    } else {
      unknown_key(key, where);
    }
  }
}

YAML::Node parse_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    throw UserError(fmt::format("cannot read config file '{}': it is a directory", path));
  }
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw UserError(fmt::format("cannot read config file '{}'", path));
  } catch (const YAML::ParserException& e) {
    throw UserError(fmt::format("YAML syntax error in '{}' at line {}, column {}: {}", path,
                                e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

// Override values are YAML (numbers, lists); text that is not YAML is taken as a string.
YAML::Node parse_value(const std::string& value) {
  try {
    return YAML::Load(value);
  } catch (const YAML::ParserException&) {
    return YAML::Node(value);
  }
}

// An empty file (or one with only empty sections) is refused: silently training every default
// is never what the user meant (usually a wrong or truncated file).
FlatConfig read_yaml_file(const std::string& path) {
  const YAML::Node root = parse_file(path);
  FlatConfig flat;
  if (!root.IsNull() && !root.IsMap())
    throw UserError(fmt::format("config file '{}': expected a mapping", path));
  if (root.IsMap()) flatten(root, "", path, flat);
  if (flat.empty())
    throw UserError(fmt::format(
        "config file '{}' sets no keys (empty); start from experiments/quickstart.yaml", path));
  return flat;
}

void apply_override(const std::string& text, FlatConfig& flat) {
  const size_t eq = text.find('=');
  const std::string where = fmt::format(" (override '{}')", text);
  if (eq == std::string::npos) {
    throw UserError(fmt::format("override '{}': expected key=value, e.g. train.lr=3e-4", text));
  }
  const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  if (known_sections().count(key)) {
    throw UserError(
        fmt::format("override '{}': '{}' is a section; set one of its keys", text, key));
  }
  if (!is_leaf(key)) unknown_key(key, where);
  put(flat, key, parse_value(value), where);
}

std::string shown(const YAML::Node& node) {
  if (node.IsScalar()) return fmt::format("'{}'", node.Scalar());
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

// An integer key also takes a number written with a fraction or an exponent when its value is
// a whole number that fits (train.steps=1e3 is 1000); 1.5e3 or 1e30 are refused.
std::optional<int64_t> as_integer(const YAML::Node& node) {
  try {
    return node.as<int64_t>();
  } catch (const YAML::Exception&) {
  }
  double x = 0;
  try {
    x = node.as<double>();
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
  // 2^63 is exactly representable; every double below it in magnitude converts exactly.
  constexpr double kLimit = 9223372036854775808.0;
  if (!std::isfinite(x) || x != std::floor(x) || x >= kLimit || x < -kLimit) return std::nullopt;
  return static_cast<int64_t>(x);
}

template <class T>
T scalar_as(const YAML::Node& node, const std::string& key, const Entry& e, const char* what) {
  if (node.IsScalar()) {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (std::optional<int64_t> v = as_integer(node)) return *v;
    } else if constexpr (std::is_same_v<T, double>) {
      // .inf / .nan are YAML numbers, but no setting means anything at infinity or NaN.
      try {
        const double x = node.as<double>();
        if (std::isfinite(x)) return x;
        throw UserError(
            fmt::format("{}: expected a finite number, got {}{}", key, shown(node), e.where));
      } catch (const YAML::Exception&) {
      }
    } else {
      try {
        return node.as<T>();
      } catch (const YAML::Exception&) {
      }
    }
  }
  throw UserError(fmt::format("{}: expected {}, got {}{}", key, what, shown(node), e.where));
}

// Decodes present keys into the typed fields; absent keys keep their defaults.
struct Decoder {
  const FlatConfig& flat;

  const Entry* find(const std::string& key) const {
    const auto it = flat.find(key);
    return it == flat.end() ? nullptr : &it->second;
  }
  void operator()(const std::string& key, int64_t& out) const {
    if (const Entry* e = find(key)) out = scalar_as<int64_t>(e->node, key, *e, "an integer");
  }
  void operator()(const std::string& key, double& out) const {
    if (const Entry* e = find(key)) out = scalar_as<double>(e->node, key, *e, "a number");
  }
  void operator()(const std::string& key, bool& out) const {
    if (const Entry* e = find(key)) out = scalar_as<bool>(e->node, key, *e, "true or false");
  }
  void operator()(const std::string& key, std::string& out) const {
    const Entry* e = find(key);
    if (!e) return;
    out = e->node.IsNull() ? "" : scalar_as<std::string>(e->node, key, *e, "a string");
  }
  // A list key also takes a single scalar (a one-element list) or null (an empty list).
  template <class T>
  void operator()(const std::string& key, std::vector<T>& out) const {
    const Entry* e = find(key);
    if (!e) return;
    const char* what = std::is_same_v<T, int64_t> ? "a list of integers" : "a list of strings";
    out.clear();
    if (e->node.IsNull()) return;
    if (e->node.IsScalar()) {
      out.push_back(scalar_as<T>(e->node, key, *e, what));
      return;
    }
    if (!e->node.IsSequence()) {
      throw UserError(
          fmt::format("{}: expected {}, got {}{}", key, what, shown(e->node), e->where));
    }
    for (const auto& item : e->node) out.push_back(scalar_as<T>(item, key, *e, what));
  }
};

}  // namespace

const std::vector<std::string>& known_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    RunConfig defaults;
    visit_fields(defaults, [&](const std::string& key, auto&) { out.push_back(key); });
    return out;
  }();
  return keys;
}

RunConfig load_config(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  FlatConfig flat = yaml_path.empty() ? FlatConfig{} : read_yaml_file(yaml_path);
  for (const auto& text : overrides) apply_override(text, flat);
  RunConfig config;
  visit_fields(config, Decoder{flat});
  config_detail::resolve_and_validate(config);
  tasks::check_task_lengths(config.task, config.train.seq_len, config.eval.seq_lens);
  return config;
}

}  // namespace kimi
