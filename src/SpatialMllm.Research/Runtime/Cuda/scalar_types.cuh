struct Float32
{
    typedef float Storage;
    static __device__ __forceinline__ float ToFloat(float v) { return v; }
    static __device__ __forceinline__ float FromFloat(float v) { return v; }
};

struct BFloat16
{
    typedef unsigned short Storage;
    static __device__ __forceinline__ float ToFloat(unsigned short v) { return __uint_as_float((unsigned)v << 16); }
    static __device__ __forceinline__ unsigned short FromFloat(float v)
    {
        unsigned u = __float_as_uint(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;   // NaN
        return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
};

struct Float16
{
    typedef unsigned short Storage;
    static __device__ __forceinline__ float ToFloat(unsigned short v) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v)); return f; }
    static __device__ __forceinline__ unsigned short FromFloat(float v) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v)); return h; }
};

template <class S> struct alignas(4 * sizeof(S)) Pack4 { S x[4]; };

template <class T>
__device__ __forceinline__ void Load4(const typename T::Storage* p, float v[4])
{
    Pack4<typename T::Storage> pack = *reinterpret_cast<const Pack4<typename T::Storage>*>(p);
    #pragma unroll
    for (int i = 0; i < 4; i++) v[i] = T::ToFloat(pack.x[i]);
}

template <class T>
__device__ __forceinline__ void Store4(typename T::Storage* p, const float v[4])
{
    Pack4<typename T::Storage> pack;
    #pragma unroll
    for (int i = 0; i < 4; i++) pack.x[i] = T::FromFloat(v[i]);
    *reinterpret_cast<Pack4<typename T::Storage>*>(p) = pack;
}

/// The float nearest v that T can hold (what storing a result in a T tensor does).
template <class T>
__device__ __forceinline__ float Round(float v) { return T::ToFloat(T::FromFloat(v)); }
