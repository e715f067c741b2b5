#include "services/common/lenient_proto.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include <cstring>
#include <vector>

#include "actors/common/text.hpp"

namespace shoutflow::services {

namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

constexpr int max_depth = 32;

bool fill(const UnknownFieldSet& fields, Message* out, int depth);

/// Copies one wire value into `field` of `out`; false on a type mismatch.
bool set_field(const UnknownField& u, const FieldDescriptor* fd, Message* out,
               int depth) {
  auto* refl = out->GetReflection();
  bool repeated = fd->is_repeated();
  auto varint = [&]() { return u.type() == UnknownField::TYPE_VARINT; };
  switch (fd->type()) {
    case FieldDescriptor::TYPE_STRING:
    case FieldDescriptor::TYPE_BYTES:
      if (u.type() != UnknownField::TYPE_LENGTH_DELIMITED)
        return false;
      repeated ? refl->AddString(out, fd, u.length_delimited())
               : refl->SetString(out, fd, u.length_delimited());
      return true;
    case FieldDescriptor::TYPE_MESSAGE: {
      if (u.type() != UnknownField::TYPE_LENGTH_DELIMITED || depth >= max_depth)
        return false;
      UnknownFieldSet nested;
      if (!nested.ParseFromString(u.length_delimited()))
        return false;
      auto* sub = repeated ? refl->AddMessage(out, fd)
                           : refl->MutableMessage(out, fd);
      return fill(nested, sub, depth + 1);
    }
    case FieldDescriptor::TYPE_BOOL:
      if (!varint())
        return false;
      repeated ? refl->AddBool(out, fd, u.varint() != 0)
               : refl->SetBool(out, fd, u.varint() != 0);
      return true;
    case FieldDescriptor::TYPE_ENUM: {
      if (!varint())
        return false;
      auto v = static_cast<int>(u.varint());
      repeated ? refl->AddEnumValue(out, fd, v)
               : refl->SetEnumValue(out, fd, v);
      return true;
    }
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_UINT64: {
      if (!varint())
        return false;
      auto v = u.varint();
      switch (fd->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          repeated ? refl->AddInt32(out, fd, static_cast<int32_t>(v))
                   : refl->SetInt32(out, fd, static_cast<int32_t>(v));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          repeated ? refl->AddUInt32(out, fd, static_cast<uint32_t>(v))
                   : refl->SetUInt32(out, fd, static_cast<uint32_t>(v));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          repeated ? refl->AddInt64(out, fd, static_cast<int64_t>(v))
                   : refl->SetInt64(out, fd, static_cast<int64_t>(v));
          break;
        default:
          repeated ? refl->AddUInt64(out, fd, v) : refl->SetUInt64(out, fd, v);
          break;
      }
      return true;
    }
    default:
      // sint*, fixed*, float and double appear in no request.
      return false;
  }
}

bool fill(const UnknownFieldSet& fields, Message* out, int depth) {
  auto* desc = out->GetDescriptor();
  for (int i = 0; i < fields.field_count(); ++i) {
    auto& u = fields.field(i);
    auto* fd = desc->FindFieldByNumber(u.number());
    if (fd == nullptr)
      continue; // a newer client's field: ignore, like protobuf does
    if (fd->is_packed() && u.type() == UnknownField::TYPE_LENGTH_DELIMITED)
      return false; // packed repeated scalars: none in our requests
    if (!set_field(u, fd, out, depth))
      return false;
  }
  return true;
}

} // namespace

bool parse_lenient(const std::string& bytes, Message* out) {
  // Not the strict parser first: it logs every invalid UTF-8 string, which
  // would let any client flood the node's log.
  out->Clear();
  UnknownFieldSet fields;
  return fields.ParseFromString(bytes) && fill(fields, out, 0);
}

bool buffer_bytes(const grpc::ByteBuffer& buffer, std::string* out) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok())
    return false;
  out->clear();
  for (auto& s : slices)
    out->append(reinterpret_cast<const char*>(s.begin()), s.size());
  return true;
}

grpc::ByteBuffer to_buffer(const Message& message) {
  auto bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string invalid_utf8_field(const Message& m) {
  auto* desc = m.GetDescriptor();
  auto* refl = m.GetReflection();
  for (int i = 0; i < desc->field_count(); ++i) {
    auto* fd = desc->field(i);
    auto bad_string = [&](const std::string& s) {
      return fd->type() == FieldDescriptor::TYPE_STRING
             && !utf8_length(s).has_value();
    };
    if (fd->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (fd->is_repeated()) {
        for (int k = 0; k < refl->FieldSize(m, fd); ++k)
          if (bad_string(refl->GetRepeatedString(m, fd, k)))
            return fd->name();
      } else if (bad_string(refl->GetString(m, fd))) {
        return fd->name();
      }
    } else if (fd->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      auto inner = [&](const Message& sub) {
        auto path = invalid_utf8_field(sub);
        return path.empty() ? path : fd->name() + "." + path;
      };
      if (fd->is_repeated()) {
        for (int k = 0; k < refl->FieldSize(m, fd); ++k)
          if (auto p = inner(refl->GetRepeatedMessage(m, fd, k)); !p.empty())
            return p;
      } else if (refl->HasField(m, fd)) {
        if (auto p = inner(refl->GetMessage(m, fd)); !p.empty())
          return p;
      }
    }
  }
  return {};
}

} // namespace shoutflow::services
