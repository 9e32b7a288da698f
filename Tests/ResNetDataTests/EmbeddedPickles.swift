import Foundation

/// Tiny CIFAR-10 pickles committed with the tests, so the Python reader is exercised even where
/// no Python with numpy exists: a `.tar.gz` (GNU tar format) of `PythonFixtures`' `tiny` output,
/// written by Python 3.11 with numpy 2.4 and GNU tar 1.34 (`tar --format=gnu -czf`).
///
/// Each folder `p2` `p2-np1` `p3` `p4` `p4-np1` `p5` `p5-np1` `py2` holds `data_batch` (2 images,
/// labels [3, 7], pixel `k` of the flattened [2, 3072] array = (7 k) mod 251) and `batches.meta`.
enum EmbeddedPickles {
    static let variants = ["p2", "p2-np1", "p3", "p4", "p4-np1", "p5", "p5-np1", "py2"]

    /// The two images' pixel bytes.
    static let images: [UInt8] = (0..<(2 * 3072)).map { UInt8((7 * $0) % 251) }
    static let labels: [Int32] = [3, 7]

    static var archive: [UInt8] { Array(Data(base64Encoded: base64.replacingOccurrences(of: "\n", with: ""))!) }

    static let base64 = """
H4sIAAAAAAAAA+2dZ1xb1xmHJSQxxDAYg/EM8UJ2EoyEJLpH1JVQu+lt1NJBqSSEUQNCrxBp3dotHhhj43299957O07SntO99x5J
994j6Zf23CthyUiJk9S6yPB/Pxj5nAPS87967+/y08O5IdtsXbqrRlSdw6F+FTX4q/rY6rDaHLW1drs67rQ5bbpKR9pfmaiuzogn
XFmpxVNlYoVss72eiK/V31nd7o940vIcygF22u3PefwddtvNx98qhuy6ypq0vJpBNcKPf3fWQtJZfE2+jma/r9PsDyoPzKRvyBeT
bR6vv60p6Gn3d1JWQ7Y6EgkErWRYRkaJTI2UbWnVN+SKCU8gHGrzBP2U0yomcyXKExNmZaIr0tHe4Q20+cmsTOVLVCCmjGLKGwg3
U6EyWCTRKDFoEIM+T4SKlbESiUbHFjb7/WEqVQbHSFQWW9jcMY/KlbGxElXEFraExeA4ZXC8RBPEoEkMtnaEO/00URmdJNHk2NLO
1kCI7lIGKyW6O7Y0Eu7yPUJTlNGpEk3zi+FSMRzsam/yeTr9nU0hf7hJ7ReariyaIVHVnOIqsSwntuzRQCdZlKmZEs2aoyvoqh6K
o/rCS/R/syfiiUKl6Tmev/9tou8dg/vf5nSi/7Wo5+1/9U3RpJ4FUva/eN+X6ZSu8QSCgeC8SnV9pbWyo6XSQdlKF+RIlCtWRb9V
/JhOcV4Qw2aJ8hupwFJvqM/xDzS5eBvGzwY+0Uyh+dXidYX91e1dbZGAJxz2zDc3hf2+jmCn0qgRMxVHl5mDzdFZKqnX9ainDb3y
8uPnjF4ql2ispV5fnyWachlVxL6xOTI/JHDHNWSJ9V1WGt+3vJcmSDRRvDT1ZyygSXPnzn3wv6LUf+p1EZrs7RPPcH2qmM4pKps4
dZb1Za9905yH3+sNhD70MdbD+tkGto3tZUfYaXaJPc6X8pV8Pd/K9/DD/BS/qM8dVT5p2j22l7/uzXPd7/N9kD78cbaMrWIy2872
saPsDLvMnuA9vJ9v4Nv4Xn6En+aXsvKKx06efm/tK17/lre9s7H5kfB81s162Wq2ke1g+9kxdpZdYU/yZXwVl/l2vo8f5Wf4ZYO5
pOKuGffZX3n/Aw+96/0i/o+wRWw5W8M2sZ3sADvOzrGrvJv38tV8I9/B9/Nj/Cy/YswfPa6yqtrxKteDb29oammPfJQtZn1sLdvM
drGD7AQ7z67xRXw5X8M38Z38AD/Oz/GrpoLS8XdbZjtf/YZ66d0fmBfsWsCWsBVsHdvCdrND7CS7wB7ji3kfX8s38138ID/Bz/Nr
2YVjJkyZWVP3mje+9R3v8bR2PLqQLWUr2Xq2le1hh9kpdpFd50v4Cr6Ob+G7+SF+kl9A6kgdqSN1pI7UkTpSR+pIHakjdaSO1JE6
UkfqSB2pI3WkjtSROlJH6kgdqSN1pI7UkTpSR+pI/YGH4vJfhKZ4W/UNeTqdriXQ5o/6jlOV2WkSTW+kGZbYbKB9XlNNdSg4j6qU
WYtEMxNmrOrMLGXmHonu9We6+qdWyHZfMGRNrwP+EvzvOocT/rcWFTv+aXXAX7z/bbXZa+B/alHwv0e6/632f1od8Fv73/bB/ned
04r+16Iy3P+G/o1fMu7kXzKQOlJH6kgdqSN1pI7UkTpSR+pIHakjdaSO1JE6UkfqSB2pI3WkjtSROlJH6kgdqSN1pI7UkTr077RW
qDZD9/+uhf+tRYnjP+T7f9tqncn7fzvgf2pR3QbF/3TlJ6re+kbKsrhybyjdBpc5weI2uoyquG1yGRRXO9tlVPXsHJdBMbJzXUZV
ws5zmaLetdllVFXrfJcpalcX+F2lqYTqwjnFVa6cAYe66A5wp4dDif4f4v2/rXa7Lcn/tjnR/5rUQP8nqt56V1lqpTvLlR2zuA2N
ZIza26L9FXHb9MI27M4ebGznKMZ2rkvvpbxeVQuPS9oFN0vahQOSdpEiaY+SqDguaZckSdqjvX336yp0qRTtnv4N2/YeOX3p8U99
8Rvff+rXf/pniivQZavk7fuOnrn8xKe/9M0fPP2bP/8r+YKzu3f1xh37j5298uRnvvytH/7st3/5d/JF/aLlazbtPHD83NVPfPYr
3/7Rz3/312eSL+EX963dvOvgifPXPvm5r37nx7/4/d+eTb5gX7Ji3Zbdh05eeIx9/mvf/ckv//D3/yRfni9duX7rnsOnLl7nX/j6
9376qz/+A+hABzrQgQ50oAMd6EAHOtCBDnSgAx3oQAc60IEO9GGLTqURGuN15cXNjrJGKre48uIyx9jof6L+RsUd4m3crgrZM9T/
sMP/0KLE8c8A/6Mm2f/A/n+aVLdx46rYw4XyzR6I3CgnWCByogQiRx0QWVVA5KgBIqsCiBz1P+SY/iFH7Q85Jn/Iqd0POVH9kGF+
aFii/4fe/6hJ4X/Y0f9alOj/ZyuiD9X+T/BA5OfQQOQBC0Q5QSQ4IHJ/eWoHRO4vSLRA5A1yv0ldKffnxEQQMVav65Fdeq/cK0vy
DQlEbs3rN6kCiPJdWV1WuW95dIGhX79AHqx9yLA+gA50oAMd6EAHOtCBDnSgAx3oQAc60IEOdKADHehAH7bockROdD7UTzLjxoec
IHzII8z3GFwhe2be/9FZA/9Di4od/yG9/2Oy/2G11eLzX00K/sfIrlj/D+H9HxX/ozbp/o+OOvS/FiX6/5nb5n+UpbxpI/SPEXDF
DXSgAx3oQAc60IEOdKADHehABzrQgQ50oAMd6EAHOvSPzKmQI0P3/3DA/9CixPHPzP0/rPj8V4vqNsH/GMkl+n/I9/+odSTv/1GH
/tekRP8/fdv8j9LE/T/EY3844JP785vEGaHd29XSIk4SG2TLJl3sCXFlDHSgAx3oQAc60IEOdKADHehABzrQgQ50oAMd6EAH+vBD
j/8d6Iv6G8/Yn4b2611yRKyD6PH/VMiRoft/WOF/aFGx4595+3848PmvFgX/Y2RXrP+HdP+PWkfy/h+4/4s2Jfr/qdvmf4xO2P8D
+kcGXnEDHehABzrQgQ50oAMd6EAHOtCBDnSgAx3oQAc60IEO/WMkVGi+Le0bgLwE/8PuqIX/oUUpxz/dG4Dc2v9wJn3+C/9Dm+rO
Wkg6izvR+yB9I2VZ3DfMDzK4E9QPMrpV94NMbkX+oGy3an9QjlvRPyjXrfoflOeOCiBkdqsGCOW7owoIFfjdqRwQKpxTXOUekECo
CBaIJqX0f7o3ALmV/2G31g3ufzvu/6JNDfR/gvdBendq8YOy3DHzgwyNZIy6H27V/SCTL+W9X8yJd34xU3Z0lTl22xcz5dTresQ5
Q++lvF4yS5R/49YvVBBbq14bmqnQLa4NqaheV6/vpVESFYund+sXUMngK0Qa7e17GHeBATrQgQ50oAMd6EAHOtCBDnSgAx3oQAc6
0IEOdKADfXiiU2mExnjdcT+Eyhqp3OKOGyI01h1XRKgCjggKhUKhUCgUCoVCoVAoFAqFQqFQqOFQ/wO3AoTOAEABAA==
"""
}
