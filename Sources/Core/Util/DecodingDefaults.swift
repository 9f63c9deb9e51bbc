extension KeyedDecodingContainer {
    /// The value under `key`, or `fallback` when the key is absent or null: configs written by
    /// older diffusers versions lack keys whose defaults the model then uses.
    func decode<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}
