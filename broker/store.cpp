#include "broker/store.h"

#include "broker/pg_store.h"
#include "broker/sqlite_store.h"

namespace zchat {

bool IsPostgresSpec(std::string_view spec) {
  return spec.starts_with("postgresql://") || spec.starts_with("postgres://");
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& spec,
                                           const StoreOptions& options) {
  if (IsPostgresSpec(spec)) {
    Result<std::unique_ptr<PgStore>> pg = PgStore::Open(spec, options);
    if (!pg.ok()) return pg.status();
    return std::unique_ptr<Store>(std::move(*pg));
  }
  Result<std::unique_ptr<SqliteStore>> lite = SqliteStore::Open(spec, options);
  if (!lite.ok()) return lite.status();
  return std::unique_ptr<Store>(std::move(*lite));
}

}  // namespace zchat
